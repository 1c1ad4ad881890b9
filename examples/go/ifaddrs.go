// ifaddrs: the network interfaces and addresses a Go program sees (net.Interfaces, net.InterfaceAddrs:
// netlink RTM_GETLINK/RTM_GETADDR dumps) — under simterpose, its simulated host's.
package main

import (
	"fmt"
	"net"
)

func main() {
	ifs, err := net.Interfaces()
	if err != nil {
		fmt.Println("interfaces:", err)
		return
	}
	for _, i := range ifs {
		addrs, _ := i.Addrs()
		fmt.Println(i.Index, i.Name, i.MTU, i.HardwareAddr, i.Flags, addrs)
	}
}
