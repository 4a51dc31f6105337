// Command etcd is etcd's own server main, built from the etcd server module that
// k8s.io/kubernetes already pins, so one wrapper module builds the whole control plane.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
