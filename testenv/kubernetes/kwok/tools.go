//go:build tools

// The program ../build.sh builds; this file only keeps it in go.mod and go.sum.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
