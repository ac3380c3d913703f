variable "role_name" {
  description = "Name of the deploy role GitHub Actions assumes."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.role_name))
    error_message = "role_name must be 1-64 characters from IAM's set (letters, digits and +=,.@_-)."
  }
}

variable "github_repository" {
  description = "The one repository whose workflows may assume the role, as \"owner/name\"."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9-]+/[A-Za-z0-9._-]+$", var.github_repository))
    error_message = "github_repository must be \"owner/name\" without wildcards: a wildcard would let other repositories deploy."
  }
}

variable "github_subject" {
  description = "The one branch or the one GitHub environment (not both) whose workflow runs may assume the role. An environment is the stronger choice: its protection rules (reviewers, branch filters) then gate every deploy."
  type = object({
    branch      = optional(string)
    environment = optional(string)
  })
  default = { branch = "main" }

  validation {
    condition     = (var.github_subject.branch == null) != (var.github_subject.environment == null)
    error_message = "github_subject must set exactly one of branch or environment: the trust policy admits one subject, so that no other branch or environment can deploy."
  }
  validation {
    condition     = alltrue([for v in [var.github_subject.branch, var.github_subject.environment] : v == null || !can(regex("[*?]", coalesce(v, "x")))])
    error_message = "github_subject values may not contain wildcards (* or ?): the trust must name one branch or environment exactly."
  }
}

variable "oidc_issuer_url" {
  description = "URL of the OIDC issuer whose tokens the roles admit: GitHub's. labkit's sandbox passes its own issuer's (https://localhost/labkit-sandbox/oidc)."
  type        = string
  default     = "https://token.actions.githubusercontent.com"

  validation {
    condition     = can(regex("^https://[A-Za-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._~-]+)*$", var.oidc_issuer_url))
    error_message = "oidc_issuer_url must be an https URL without a trailing slash, such as https://token.actions.githubusercontent.com: IAM accepts no other scheme, and a token's iss must match it exactly."
  }
}

variable "oidc_thumbprints" {
  description = "SHA-1 thumbprints of the issuer's top CA certificate, as IAM stores them. AWS checks GitHub's against its own CA library and ignores these; the sandbox checks its issuer's (labkit.sandbox.oidc_issuer)."
  type        = list(string)
  default     = ["6938fd4d98bab03faadb97b34396831e3780aea1", "1c58a3a8518e8759bf075b76b750d4f2df264fcd"]

  validation {
    condition     = length(var.oidc_thumbprints) >= 1 && length(var.oidc_thumbprints) <= 5 && alltrue([for t in var.oidc_thumbprints : can(regex("^[0-9a-fA-F]{40}$", t))])
    error_message = "oidc_thumbprints must be 1-5 SHA-1 fingerprints of 40 hex digits each (IAM's limits)."
  }
}

variable "ledger_table_arn" {
  description = "ARN of the deployment ledger table, which the deploy controller reads and writes."
  type        = string
}

variable "plan_role_name" {
  description = "Name of a read-only role that pull request workflows of github_repository assume to plan (sub repo:OWNER/NAME:pull_request); null creates none."
  type        = string
  default     = null
}

variable "create_oidc_provider" {
  description = "Create the account's OIDC provider for token.actions.githubusercontent.com. An account can hold only one per URL: set false when it already exists, and the module looks it up."
  type        = bool
  default     = true
}

variable "max_session_duration" {
  description = "Longest session, in seconds, a workflow run gets from the role (1-12 hours). One hour covers a staging apply with room to spare."
  type        = number
  default     = 3600

  validation {
    condition     = var.max_session_duration >= 3600 && var.max_session_duration <= 43200
    error_message = "max_session_duration must be 3600-43200 seconds, the range IAM accepts."
  }
}

variable "managed_name_prefix" {
  description = "Name prefix of the resources the role may create and change (e.g. \"bglab-staging\"); IAM roles, SNS topics, KMS aliases and log groups outside it stay out of reach."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.managed_name_prefix))
    error_message = "managed_name_prefix must be 3-32 lowercase letters, digits and hyphens, as the environments' name prefixes are."
  }
}

variable "state_bucket_arn" {
  description = "ARN of the Terraform state bucket."
  type        = string
}

variable "state_key_prefixes" {
  description = "State object key prefixes the role may read and write, e.g. [\"staging/\"]: one environment's state, not the others'."
  type        = list(string)
  default     = ["staging/"]

  validation {
    condition     = length(var.state_key_prefixes) > 0 && alltrue([for p in var.state_key_prefixes : endswith(p, "/") && !startswith(p, "/")])
    error_message = "state_key_prefixes must be non-empty folder prefixes such as \"staging/\" (ending in /, not starting with /)."
  }
}

variable "readable_state_keys" {
  description = "Other objects of the state bucket the deploy role may read, not write: labkit refuses a VPC range that overlaps another environment's, which it reads from the other states' vpc_cidr output and the developer environments' claims, and the orphans runbook reads what every state holds."
  type        = list(string)
  default     = []
}

variable "lock_table_arn" {
  description = "ARN of the DynamoDB lock table when Terraform locks state with it (before 1.10); null when it locks with a lock file in S3 (use_lockfile, 1.10+), and the roles get no rights on the table."
  type        = string
  default     = null
}

variable "manage_budget" {
  description = "Whether the environment has a cost budget (bluegreen_environment's enable_budget): the deploy role may then manage, and the plan role read, the budgets under managed_name_prefix; false leaves budgets out of reach."
  type        = bool
  default     = true
}

variable "manage_alarm_key" {
  description = "Whether the environment's alarm topic has a KMS key of its own (module monitoring's, when it is given none): the deploy role may then create the key and manage the keys and aliases under managed_name_prefix, and the plan role read them; false (staging, whose topic uses the project's key) leaves KMS keys out of reach but the state key."
  type        = bool
  default     = true
}

variable "manage_flow_logs" {
  description = "Whether the environment's VPC has flow logs (the network module's enable_flow_logs): the deploy role may then create the flow log, its log group under /vpc/managed_name_prefix and pass its role to the flow logs service."
  type        = bool
  default     = false
}

variable "state_kms_key_arn" {
  description = "ARN of the KMS key that encrypts state."
  type        = string
}

variable "artifact_bucket_arn" {
  description = "ARN of the release artifact bucket: CI uploads releases/<version>/release.tar.gz there."
  type        = string
}

variable "tags" {
  description = "Extra tags for every resource of this module (the provider's default_tags come on top)."
  type        = map(string)
  default     = {}
}
