"""The real side of `simterpose compare`: a scenario's hosts as Linux network namespaces.

- :mod:`.topology` maps a SimGrid platform onto what the real network can reproduce (or says why not);
- :mod:`.netns` builds and tears down the namespaces, veths and qdiscs, and runs the processes;
- :mod:`.delayline` is the userspace propagation delay (a TUN device in the router namespace).
"""
