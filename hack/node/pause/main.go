// Command pause is the pod sandbox's process: it holds the pod's namespaces open and sleeps
// until it is told to stop. A static binary in a FROM scratch image (kubelet's sandbox image).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
