//go:build !linux

package localcloud

import "syscall"

func dieWithParent() *syscall.SysProcAttr { return nil }
