variable "region" {
  description = "AWS region of the account-wide resources (labkit passes the target's region)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region code such as us-east-1."
  }
}

variable "project" {
  description = "Project tag and name prefix shared by every environment."
  type        = string
  default     = "bglab"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}$", var.project))
    error_message = "project must be 2-15 lowercase letters, digits and hyphens, starting with a letter: it prefixes names that AWS limits to 32 characters."
  }
}

variable "state_bucket_name" {
  description = "Name of the Terraform state bucket. labkit derives it from the project, account id and region (S3 names are global)."
  type        = string
}

variable "lock_table_name" {
  description = "Name of the DynamoDB state lock table (for Terraform before 1.10)."
  type        = string
}

variable "artifact_bucket_name" {
  description = "Name of the release artifact bucket (releases/<version>/release.tar.gz)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", var.artifact_bucket_name))
    error_message = "artifact_bucket_name must be 3-63 lowercase letters, digits and hyphens: an S3 bucket name that also works in virtual-host-style URLs."
  }
}

variable "artifact_bucket_force_destroy" {
  description = "Let a teardown delete the artifact bucket with its releases in it. Releases are rebuilt from git, so a lab account says yes; keep false where old releases are your only copy."
  type        = bool
  default     = true
}

variable "ledger_table_name" {
  description = "Name of the DynamoDB table that records deployments and their events (partition key pk, sort key sk)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{3,255}$", var.ledger_table_name))
    error_message = "ledger_table_name must be 3-255 letters, digits, underscores, dots or hyphens (DynamoDB's rule for table names)."
  }
}

variable "github_repository" {
  description = "GitHub repository (\"owner/name\") whose workflows may deploy staging through OIDC. null creates no OIDC provider or role: never point it at a repository you do not control, since its workflows could then deploy to this account."
  type        = string
  default     = null
}

variable "github_subject" {
  description = "The one branch or GitHub environment of github_repository that may deploy (exactly one of the two)."
  type = object({
    branch      = optional(string)
    environment = optional(string)
  })
  default = { environment = "staging" }
}

variable "github_oidc_issuer_url" {
  description = "The OIDC issuer whose tokens the GitHub roles admit: GitHub's. In the sandbox, the sandbox's own issuer (labkit.sandbox.oidc_issuer: https://localhost/labkit-sandbox/oidc)."
  type        = string
  default     = "https://token.actions.githubusercontent.com"
}

variable "github_oidc_thumbprints" {
  description = "Thumbprints of the issuer's top CA certificate for the OIDC provider (GitHub's by default; the sandbox's issuer has its own)."
  type        = list(string)
  default     = ["6938fd4d98bab03faadb97b34396831e3780aea1", "1c58a3a8518e8759bf075b76b750d4f2df264fcd"]
}

variable "create_oidc_provider" {
  description = "Create the account's GitHub OIDC provider; false when the account already has one (there can be only one per URL)."
  type        = bool
  default     = true
}

variable "require_tls" {
  description = "Deny non-TLS requests to the state and artifact buckets. labkit turns it off in the sandbox only, whose endpoint is plain HTTP on loopback (the policy would refuse every request there, as it should)."
  type        = bool
  default     = true
}

variable "lock_with_table" {
  description = "Whether Terraform locks state with the DynamoDB lock table (before 1.10) rather than a lock file in S3 (use_lockfile): only then do the GitHub roles get rights on the table. labkit sets it from the Terraform it runs (labkit.infra.stack.uses_lockfile)."
  type        = bool
  default     = false
}

variable "enable_budget" {
  description = "Whether the app environments have a cost budget (their own enable_budget): only then may the GitHub deploy role manage, and the plan role read, their budgets. labkit sets both from one setting (labkit.infra.sandbox_off)."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Extra tags on every resource, on top of Project, Environment and ManagedBy."
  type        = map(string)
  default     = {}
}
