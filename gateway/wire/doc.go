// Package wire is every byte format Strait puts on the wire or reads from
// a client, and nothing else: no sockets, no dialling, no listening
// (TestWireAndRouteDoNotTouchTheNetwork in package gateway proves it).
//
// Between two gateways (mTLS, TLS 1.3 both ways; the peer's cluster and
// region come from its certificate, never from these bytes):
//
//	ALPN             carried as           first bytes, outbound -> inbound               answer, inbound -> outbound
//	strait-tunnel/1  yamux streams on     per stream: u16 length, SNI of the target,    per stream: "OK\n" or "ERR <reason>\n"
//	                 one TLS connection   then the facts line                            (at most 512 bytes), then payload
//	strait-flow/1    one TLS connection   the facts line (the target is the TLS SNI)     "OK\n" or "ERR <reason>\n", then payload
//	                 per stream
//
//	SNI of a target        outbound_.<port>_._.<service>.<namespace>.svc.clusterset.local
//	facts line             one JSON object and "\n", at most 4096 bytes (Facts): the
//	                       classes, the regions they allow, classifying headers, the
//	                       source namespace, the outbound gateway's policy version
//	ERR reasons            "residency: ..." for a residency refusal (never a failure
//	                       of the peer); anything else lets the outbound side fail over
//
// The inbound side reads nothing the peer sent after the header before it
// has answered; the readers here read the facts and answer lines one byte
// at a time, so no payload byte is consumed with them.
//
// From local workloads (sni.go, clienthello.go):
//
//	CONNECT authority      <service>.<namespace>.svc.clusterset.local:<port> (ParseAuthority)
//	passthrough SNI        outbound_.<port>_._.<service>.<namespace>.svc.cluster.local (ParseMeshSNI)
//	TLS ClientHello        read without answering, bounded (ReadClientHello), replayed upstream
//
// Every reader has a fuzz target beside it: FuzzReadStreamHeader,
// FuzzDecodeFacts, FuzzParseSNI, FuzzParseAuthority, FuzzParseMeshSNI,
// FuzzReadClientHello. Facts are bounded (classes, regions, headers) and
// can only narrow a decision: see decideInbound in package gateway.
package wire
