"""cloudify-cluster-operator: run Cloudify Manager HA clusters declaratively from Kubernetes.

Layout (one concern per module):
  model       frozen values: the parsed spec, what was observed, the actions
  planner     pure: plan(spec, observed, memory) -> ordered actions; no I/O
  client      the manager REST client (requests); one method per endpoint
  errors      the error tree (managers and Kubernetes); HTTP details never leave client.py and kube.py
  reconciler  one pass: observe -> plan -> execute one step -> status
  status      status and conditions from a pass; the diff that is written
  kube        reads and writes of Kubernetes objects outside kopf (pykube-ng)
  redact      the logging filter that keeps secrets out of every log line
  handlers    the only kopf-aware module (settings and kopf.run too)
  cli         the console script: arguments, the Runtime, then handlers.run
"""
