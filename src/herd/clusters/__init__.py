"""Where clusters come from: Rancher and kubeconfig Secrets, kubeconfig files, downstream RBAC."""
