//go:build tools

// Package tools lists the main package the Argo CD build compiles (one binary that acts as each
// component by its argv[0] name), so that `go mod tidy` records all of its imports in go.sum.
package tools

import (
	_ "github.com/argoproj/argo-cd/v3/cmd"
)
