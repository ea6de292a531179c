// Package tunnel keeps pooled, multiplexed mTLS tunnels (libp2p's yamux
// over TLS 1.3, ALPN strait-tunnel/1) between gateways: a few per peer, dialled on
// first use, shared by every stream to that peer, and serves the tunnels
// peers open. It has its own Config, Dialer, Metrics and clock.
//
// Invariants:
//
//   - Every outbound connection is pinned (Peer): after the handshake the
//     certificate must name exactly the cluster and region the catalog
//     lists at the address, or the connection is closed before a byte of
//     a stream is sent, the dial fails with a *MismatchError and
//     Config.Mismatch hears of it. Tunnels are kept per Peer, so a tunnel
//     never carries a stream for another cluster than the one its
//     certificate names (TestPoolPinsPeers).
//   - A tunnel that hears nothing from its peer for KeepaliveTimeout (or
//     four times its longest recent ping, on a loaded link) while a ping
//     is due is closed at once (the socket beneath TLS first), and its
//     streams fail so that they go to the next candidate.
//   - A peer whose tunnel died that way, or whose dial failed, is down:
//     Demote moves it behind every other candidate (never removes it) and
//     a probe dials it with backoff until it answers.
//   - Each stream has its own flow-control window, so one slow reader
//     never stalls the tunnel, and windows grow with the path within a
//     per-peer budget (window.go); a half-closed stream keeps carrying
//     its answer.
//   - On drain an inbound tunnel tells its peer to open no more streams
//     (a drain notice on a stream of its own), answers ERR to any that
//     still arrive, lets open streams finish within Config.Drain, then
//     closes.
//   - One peer has at most Config.MaxStreamsPerPeer streams open over the
//     tunnels it opened here: more are answered ERR and forgotten, so what
//     a peer can leave buffered is at most MaxStreamsPerPeer ×
//     StreamWindowKiB plus what windows grew by, PeerWindowMiB
//     (TestMaxStreamsPerPeer, TestWindowsGrowWithinBudget).
//   - Once the handshake is done, a tunnel's records are sealed and
//     opened by the record layer (package record) instead of crypto/tls:
//     the same TLS 1.3 records on the wire, so a peer on crypto/tls
//     cannot tell, with a frame sealed straight from the multiplexer's
//     buffer and written in one system call (TestFrameIsOneWrite), and
//     many records taken per read. The multiplexer (third_party/go-yamux)
//     reads a stream's bytes straight into its frames (Stream.ReadFrom)
//     and hands received frames on as they are (Stream.WriteTo).
//   - Every goroutine of a pool ends once its context ends and its tunnels
//     are closed (Close, then Wait).
package tunnel
