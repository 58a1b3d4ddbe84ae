package workload

// CrashOnStop makes w's shutdown (the end of Run's context) leave its lease to expire
// instead of revoking it, as a crashed sidecar would: its keep-alives stop and its
// listeners close, but nothing tells the anchors.
func (w *Workload) CrashOnStop() { w.crash.Store(true) }
