"""Fleet over BGP (issue 10): pathsteer speaks BGP through ExaBGP, a child process it supervises.

Each router announces the destinations it steers with what it measured (MED from the best
eligible path's RTT and loss, large communities with the path, RTT and loss: `announce`), and
withdraws those it has no eligible path for; it can learn destinations from its peers
(`learn`). `exabgp` writes ExaBGP's configuration and runs it; `messages` reads what ExaBGP
says; `service` is the daemon's ``bgp`` component.
"""
