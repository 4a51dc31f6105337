"""`kubectl mgrc`: the kubectl plugin for ManagerCluster objects (console script `kubectl-mgrc`).

  api    the few Kubernetes calls it makes (pykube-ng), each failure a one-line PluginError
  view   pure: a ManagerCluster object -> a summary, and the summary -> text (colour or plain)
  cli    argparse: status, pause, resume, logs, plan

It never imports kopf: it runs wherever kubectl runs, with the kubeconfig kubectl uses.
"""
