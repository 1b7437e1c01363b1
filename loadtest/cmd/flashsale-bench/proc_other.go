//go:build !linux

package main

import "os/exec"

// setProcAttr does nothing outside Linux: there the bench's own cleanup is
// the only thing that stops its children.
func setProcAttr(*exec.Cmd) {}
