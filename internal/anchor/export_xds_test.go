package anchor

import "time"

// SetWorkloadClaimWait shortens how long a sidecar's or gateway's stream waits for its
// proxy's Workload (workloadClaimWait) until restore is called.
func SetWorkloadClaimWait(d time.Duration) (restore func()) {
	old := claimWaitOverride.Swap(int64(d))
	return func() { claimWaitOverride.Store(old) }
}

// OnWorkloadClaimWait calls f with the node's ID whenever a stream starts waiting for its
// proxy's Workload, until restore is called.
func OnWorkloadClaimWait(f func(nodeID string)) (restore func()) {
	old := onClaimWait.Swap(&f)
	return func() { onClaimWait.Store(old) }
}
