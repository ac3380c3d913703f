"""Identity: GitHub-style OIDC ID tokens, IAM policy evaluation, and STS's web identity checks.

Pure logic, no AWS calls: :mod:`.jwt` (RS256 tokens and keys), :mod:`.github` (the claims of a
GitHub Actions token), :mod:`.issuer` (an issuer's keys, documents and tokens), :mod:`.policy`
(IAM policy evaluation) and :mod:`.webidentity` (what AssumeRoleWithWebIdentity checks). The
sandbox's IAM enforcement and OIDC issuer (:mod:`labkit.sandbox.server`) and ``labkit ci`` use them.
"""
