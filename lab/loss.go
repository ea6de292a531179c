package lab

import (
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/Shopify/toxiproxy/v2/toxics"
)

// packetLoss is a toxic that gives a link a packet loss rate, as far as a
// proxy between two TCP connections can: each segment (lossSegment bytes)
// crossing the link is lost with probability Probability, and a lost one
// holds back what follows for Stall (one round trip: the receiver waits
// for the retransmission, the segments behind it wait in its buffer).
// What it does not give is TCP's answer to loss on the path (a sender
// that halves its window): the kernel's TCP runs on the loopback
// connections either side of the proxy, which lose nothing, and this
// machine's kernel has no netem to lose packets in.
type packetLoss struct {
	Probability float64 `json:"probability"`
	StallMs     int64   `json:"stall"`
}

// lossSegment is a TCP segment's payload on a 1500-byte path.
const lossSegment = 1448

// registerLoss makes the toxic known to toxiproxy, whose registry is the
// package's own.
var registerLoss = sync.OnceFunc(func() { toxics.Register("strait_packet_loss", new(packetLoss)) })

// GetBufferSize lets the chunks behind a lost segment arrive while it is
// retransmitted, as a receiver's buffer does.
func (t *packetLoss) GetBufferSize() int { return 1 << 14 }

func (t *packetLoss) Pipe(stub *toxics.ToxicStub) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 15))
	stall := time.Duration(t.StallMs) * time.Millisecond
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			segs := float64((len(c.Data) + lossSegment - 1) / lossSegment)
			if rng.Float64() < 1-math.Pow(1-t.Probability, segs) {
				select {
				case <-time.After(stall):
				case <-stub.Interrupt:
					stub.Output <- c // nothing is dropped on the floor
					return
				}
				c.Timestamp = time.Now()
			}
			stub.Output <- c
		}
	}
}
