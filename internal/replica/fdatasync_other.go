//go:build !linux

package replica

import "os"

// fdatasync flushes f's data; where fdatasync(2) is not available, with fsync.
func fdatasync(f *os.File) error { return f.Sync() }
