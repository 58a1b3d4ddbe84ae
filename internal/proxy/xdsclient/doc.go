// Package xdsclient is the proxy's xDS client: one Aggregated Discovery Service (ADS) stream, state of
// the world or, with Options.Delta, incremental (delta), to one of a list of control-plane servers at a
// time.
//
// The client subscribes to every Listener and Cluster (wildcard), and to the RouteConfiguration,
// ClusterLoadAssignment and Secret names its Consumer says the accepted Listeners and Clusters refer to.
// Each response is handed, as the complete accepted state with that one type replaced, to the Consumer;
// an error from the Consumer NACKs the response (the previous state stays in force and the error text
// goes back to the server in error_detail), otherwise the response is ACKed and becomes the new state.
// When a stream breaks the client moves to the next server with exponential backoff and jitter; the last
// accepted state stays in force meanwhile (static stability).
//
// Delta streams (delta.go) merge each response's resources and removed_resources into the held set of
// its type, so the Consumer sees exactly the same full state as with state of the world; they subscribe
// to "*" for Listeners and Clusters, change the other subscriptions by difference, ACK and NACK by
// nonce, and on reconnect send initial_resource_versions so the server skips what the client has. A
// server answering delta with Unimplemented is used with state of the world instead.
//
// Only internal/proxy imports this package.
package xdsclient
