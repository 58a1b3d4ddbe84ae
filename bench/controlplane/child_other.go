//go:build !linux

package main

import "syscall"

// childAttr: elsewhere a child is only stopped by the benchmark itself.
func childAttr() *syscall.SysProcAttr { return nil }
