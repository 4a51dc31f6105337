module cloudify-cluster-operator/pause

go 1.26.0
