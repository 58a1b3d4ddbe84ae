// Package rawsock gives the proxy TCP connections whose reads and writes do not go through the Go
// scheduler's blocking-system-call path.
//
// A socket of the net package is non-blocking: a read or write that cannot proceed returns EAGAIN
// at once and the goroutine waits in the netpoller. Yet every read and write is made as a
// potentially blocking system call, and the runtime's bookkeeping for one is not free for a proxy
// that moves one small request at a time: entering it wakes the runtime's monitor thread (sysmon)
// whenever the process was idle, which then polls every 20 µs until the process is idle again, and
// a call that runs longer than one of those polls (a write on loopback runs the receiver's TCP
// input too) has its processor handed to another thread. Measured on the proxy at 1,000 requests/s
// (docs/performance.md, "System calls without the scheduler"): 1 futex and 2.7 nanosleep system
// calls per request came from it, and a quarter to a third of the proxy's CPU time per request.
//
// Conn makes the read and write system calls directly (syscall.RawSyscall, for calls that do not
// block) and waits for readiness through the connection's own poller (syscall.RawConn), so
// deadlines, Close and the netpoller behave as for a *net.TCPConn. Only Linux takes this path;
// elsewhere New returns the connection unchanged.
//
// Only internal/proxy and its subpackages import this package.
package rawsock
