"""Policy: virtual clocks, sleeps and CPU charging on the simulated platform."""
