package main

import "syscall"

// childAttr makes a child (worker or anchor) die with the benchmark (SIGKILL when its parent exits).
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
