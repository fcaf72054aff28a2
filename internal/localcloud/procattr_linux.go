package localcloud

import "syscall"

// dieWithParent makes a child process get SIGTERM if the emulator dies without Close, so a
// crashed test leaves no registry behind.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
