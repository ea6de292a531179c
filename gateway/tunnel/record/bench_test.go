package record

import (
	"io"
	"testing"
)

const benchWrite = 128 << 10

// BenchmarkWrite: 128 KiB writes on loopback; the peer's socket is
// drained without decrypting, so only the writer is measured.
func BenchmarkWrite(b *testing.B) {
	for _, impl := range []string{"crypto-tls", "record", "record-owned"} {
		b.Run(impl, func(b *testing.B) {
			client, server := tlsPair(b, pairOpts{})
			write := client.tc.Write
			if impl != "crypto-tls" {
				c := client.switchTo(b, true)
				write = c.Write
				if impl == "record-owned" {
					write = c.WriteOwned
				}
			}
			go func() { _, _ = io.Copy(io.Discard, server.raw.NetConn()) }()
			buf := randomBytes(1, benchWrite)
			b.SetBytes(benchWrite)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := write(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRead: 128 KiB reads on loopback of what our Conn writes as
// fast as it can, into crypto/tls or our Conn.
func BenchmarkRead(b *testing.B) {
	for _, impl := range []string{"crypto-tls", "record"} {
		b.Run(impl, func(b *testing.B) {
			client, server := tlsPair(b, pairOpts{})
			w := server.switchTo(b, false)
			var r io.Reader = client.tc
			if impl == "record" {
				r = client.switchTo(b, true)
			}
			go func() {
				buf := randomBytes(2, benchWrite)
				for {
					if _, err := w.Write(buf); err != nil {
						return
					}
				}
			}()
			buf := make([]byte, benchWrite)
			b.SetBytes(benchWrite)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := io.ReadFull(r, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
