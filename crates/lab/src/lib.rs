//! tibridge-lab: loopback simulators of the outside systems (see shared/contracts). Binds 127.0.0.1 only.
