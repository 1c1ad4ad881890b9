// hello: a Go program started at simulated date 0 (the runtime aborts if CLOCK_MONOTONIC reads 0),
// then time.Sleep and a time.Ticker: each line gives the time elapsed since the start.
package main

import (
	"fmt"
	"time"
)

func main() {
	t0 := time.Now()
	fmt.Println("hello")
	time.Sleep(100 * time.Millisecond)
	fmt.Println("slept", time.Since(t0))
	tk := time.NewTicker(250 * time.Millisecond)
	for i := 0; i < 4; i++ {
		<-tk.C
	}
	tk.Stop()
	fmt.Println("ticked", time.Since(t0))
}
