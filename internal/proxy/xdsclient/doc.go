// Package xdsclient is the proxy's xDS client: one Aggregated Discovery Service (ADS) stream, state of
// the world, to one of a list of control-plane servers at a time.
//
// The client subscribes to every Listener and Cluster (wildcard), and to the RouteConfiguration,
// ClusterLoadAssignment and Secret names its Consumer says the accepted Listeners and Clusters refer to.
// Each response is handed, as the complete accepted state with that one type replaced, to the Consumer;
// an error from the Consumer NACKs the response (the previous state stays in force and the error text
// goes back to the server in error_detail), otherwise the response is ACKed and becomes the new state.
// When a stream breaks the client moves to the next server with exponential backoff and jitter; the last
// accepted state stays in force meanwhile (static stability).
//
// Only internal/proxy imports this package.
package xdsclient
