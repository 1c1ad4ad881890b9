// httpc HOST:PORT: GETs over one keep-alive connection; prints each status, size and checksum.
package main

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
)

func main() {
	base := "http://" + os.Args[1]
	conns := 0
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		if !i.Reused {
			conns++
		}
	}}
	for _, p := range []string{"/small", "/big", "/small", "/big", "/quit"} {
		req, _ := http.NewRequest("GET", base+p, nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		fmt.Printf("%s %d %d %x\n", p, r.StatusCode, len(b), sha256.Sum256(b))
	}
	fmt.Println("connections", conns)
}
