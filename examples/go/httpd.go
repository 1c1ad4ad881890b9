// httpd PORT: a net/http server with a small page, a 2 MiB body and /quit (answers, then exits).
package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"time"
)

func main() {
	body := bytes.Repeat([]byte("0123456789abcdef"), 128*1024) // 2 MiB
	http.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello\n") })
	http.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
	http.HandleFunc("/quit", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "bye\n")
		w.(http.Flusher).Flush()
		go func() { time.Sleep(100 * time.Millisecond); os.Exit(0) }()
	})
	fmt.Println(http.ListenAndServe(":"+os.Args[1], nil))
	os.Exit(1)
}
