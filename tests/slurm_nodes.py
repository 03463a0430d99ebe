"""A throw-away 2-node SLURM cluster on one machine, made of network namespaces.

Each node is a network namespace with its own address on a private subnet
(``10.250.X.0/24``), its own host name (a UTS namespace) and ``/etc/hosts``
(``/etc/netns/NS/hosts``), and its own ``slurmd``.  A bridge in the root
namespace joins the nodes' veth pairs and carries ``10.250.X.1``, where
``slurmctld`` (in the root namespace) listens.  The file system is shared,
as NFS is on a cluster.  MPI ranks on different nodes talk over TCP between
the namespaces' addresses; no traffic leaves the machine.

Everything else (installation, configuration, start and stop) is
:mod:`slurm_cluster`'s; this module changes the controller's address, adds
one ``NodeName`` per namespace and starts each ``slurmd`` inside its node.

Two details make ``slurmd`` run in a namespace:

- ``ip netns exec`` mounts a fresh ``/sys`` (so that programs see the
  namespace's own network devices there), which hides the host's cgroup
  mounts; slurm 22.05's ``slurmd`` refuses to start without one.  A private
  tmpfs with a named (controller-less) v1 hierarchy satisfies it; with
  ``ProctrackType=proctrack/linuxproc`` no cgroup is ever used.
- pip's MPICH 5.0 has two network modules, UCX (its default) and OFI.  UCX
  takes processes with one boot id for one machine and would pass messages
  between the namespaces through shared memory; and under ``srun
  --mpi=pmi2`` its address exchange breaks slurm 22.05's PMI2 server now and
  then (``mpi/pmi2: value not properly terminated in client request``, then
  a failed or hung step: 5 of 7 two-node jobs here).  :data:`MPI_ENV`, set
  in the jobs' environment, selects OFI's tcp provider instead: ranks on
  different nodes talk over TCP between the namespaces' addresses (and ranks
  of one node through MPICH's shared memory).  So set, 12 of 12 two-node
  jobs ran cleanly under ``srun --mpi=pmi2`` and 3 of 3 under ``mpiexec``.

Namespaces, links and daemons are removed by :meth:`SlurmNodes.stop`, also
when starting fails; leftovers of a process that died without cleaning up
(its pid is in the namespace names) are removed by the next start.

Needs root, ``ip`` (iproute2) and ``unshare``/``mount`` (util-linux).
Runnable by hand::

    python tests/slurm_nodes.py install        # apt-get slurm when needed
    python tests/slurm_nodes.py up DIR         # start; prints SLURM_CONF=...
    python tests/slurm_nodes.py down DIR       # stop and remove the namespaces
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

try:
    from .slurm_cluster import SlurmCluster, SlurmUnavailable, ensure_installed
except ImportError:
    from slurm_cluster import SlurmCluster, SlurmUnavailable, ensure_installed

# The environment that makes pip's MPICH talk TCP between the nodes (see above).
MPI_ENV = {"MPIR_CVAR_CH4_NETMOD": "ofi", "FI_PROVIDER": "tcp"}

_PREFIX = "hpcml"
_NETNS = re.compile(rf"^{_PREFIX}-(\d+)-(\d+)-n\d+$")
# Inside the node's namespaces: a cgroup mount slurmd accepts, the node's
# host name, then the daemon.  "$0" is the host name, "$@" the program.
_NODE_SHELL = (
    "set -e; mount -t tmpfs none /sys/fs/cgroup; mkdir /sys/fs/cgroup/systemd; "
    "mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd; "
    'hostname "$0"; exec "$@"'
)


def _ip(*args, check=True):
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise SlurmUnavailable(f"ip {' '.join(args)} failed: {proc.stderr.strip() or proc.returncode}")
    return proc


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def check_possible():
    """Raise :class:`SlurmUnavailable` when namespaces cannot be made here (the message says why)."""
    if not sys.platform.startswith("linux"):
        raise SlurmUnavailable("network namespaces need Linux")
    if os.geteuid() != 0:
        raise SlurmUnavailable("network namespaces need root")
    missing = [p for p in ("ip", "unshare", "mount") if shutil.which(p) is None]
    if missing:
        raise SlurmUnavailable(f"{', '.join(missing)} not installed")
    probe = f"{_PREFIX}-{os.getpid()}-0-probe"
    proc = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise SlurmUnavailable(f"ip netns add failed: {proc.stderr.strip()}")
    _ip("netns", "delete", probe, check=False)


class NodeNetwork:
    """A bridge with ``10.250.X.1`` and one namespace per node at ``10.250.X.(10 + k)``.

    Parameters
    ----------
    count : int
        Number of nodes.
    state : dict, optional
        What :meth:`describe` returned (to remove a network made by another
        process); by default a new network is planned.
    """

    def __init__(self, count=2, state=None):
        if state is None:
            state = {"count": count, "owner": os.getpid(), "subnet": None}
        self.count = state["count"]
        self.owner = state["owner"]
        self.subnet = state["subnet"]

    def describe(self):
        """A JSON-able description, for :class:`NodeNetwork` ``(state=...)``."""
        return {"count": self.count, "owner": self.owner, "subnet": self.subnet}

    @property
    def bridge(self):
        return f"{_PREFIX}br{self.subnet}"

    @property
    def gateway(self):
        """The root namespace's address on the bridge (slurmctld's)."""
        return f"10.250.{self.subnet}.1"

    def address(self, k):
        """Node ``k``'s address (``k`` from 1)."""
        return f"10.250.{self.subnet}.{10 + k}"

    def netns(self, k):
        return f"{_PREFIX}-{self.owner}-{self.subnet}-n{k}"

    def hostname(self, k):
        return f"node{k}"

    def _veth(self, k):
        return f"{_PREFIX}v{self.subnet}n{k}"

    def _free_subnets(self):
        used = set(re.findall(r"\b10\.250\.(\d+)\.", _ip("-4", "-o", "addr", "show").stdout))
        links = _ip("-o", "link", "show").stdout
        # Start at a pid-dependent place so that concurrent runs rarely collide.
        start = os.getpid() % 200
        for i in range(254):
            x = (start + i) % 254 + 1
            if str(x) not in used and f" {_PREFIX}br{x}:" not in links:
                yield x

    def create(self):
        """Make the bridge, the namespaces, their veth pairs, addresses and hosts files."""
        sweep_stale()
        for x in self._free_subnets():
            if _ip("link", "add", f"{_PREFIX}br{x}", "type", "bridge", check=False).returncode == 0:
                self.subnet = x
                break
        else:
            raise SlurmUnavailable("no free 10.250.X.0/24 subnet for the test nodes")
        try:
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            hosts = "127.0.0.1 localhost\n" + f"{self.gateway} controller\n" + "".join(
                f"{self.address(k)} {self.hostname(k)}\n" for k in range(1, self.count + 1))
            for k in range(1, self.count + 1):
                ns, veth = self.netns(k), self._veth(k)
                _ip("netns", "add", ns)
                etc = Path("/etc/netns") / ns
                etc.mkdir(parents=True, exist_ok=True)
                (etc / "hosts").write_text(hosts)
                (etc / "hostname").write_text(self.hostname(k) + "\n")
                _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
                _ip("link", "set", veth, "master", self.bridge, "up")
                _ip("-n", ns, "addr", "add", f"{self.address(k)}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.remove()
            raise
        return self

    def node_argv(self, k, argv):
        """``argv`` run as node ``k``: in its namespace, with its host name."""
        return ["ip", "netns", "exec", self.netns(k), "unshare", "--uts", "sh", "-c", _NODE_SHELL,
                self.hostname(k), *argv]

    def remove(self):
        """Remove namespaces (ending what still runs in them), veths, hosts files and the bridge."""
        if self.subnet is None:
            return
        for k in range(1, self.count + 1):
            _remove_netns(self.netns(k))
            _ip("link", "delete", self._veth(k), check=False)
        _ip("link", "delete", self.bridge, check=False)


def _remove_netns(ns):
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=30).stdout
    for pid in pids.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError):
            pass
    _ip("netns", "delete", ns, check=False)
    shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)


def sweep_stale():
    """Remove the namespaces and bridges left by runs whose process is gone."""
    names = _ip("netns", "list", check=False).stdout.split()
    for ns in names:
        m = _NETNS.match(ns)
        if m and not _alive(int(m.group(1))):
            _remove_netns(ns)
            _ip("link", "delete", f"{_PREFIX}br{m.group(2)}", check=False)


class SlurmNodes(SlurmCluster):
    """A SLURM cluster of ``count`` nodes (``node1`` ...), each in its own network namespace.

    Parameters
    ----------
    root : path-like
        An empty or non-existent directory for configuration, state, spool
        and logs (shared by all nodes, as on a shared file system).
    count : int
        Number of nodes.
    """

    def __init__(self, root, count=2, name="hpcmlnodes"):
        super().__init__(root, name)
        self.network = NodeNetwork(count)
        self.nodes = [self.network.hostname(k) for k in range(1, count + 1)]

    def config_lines(self):
        r = self.root
        net = self.network
        replace = {
            "SlurmctldHost": f"localhost({net.gateway})",
            # One spool directory, pid file and log per node (%n: node name).
            "SlurmdSpoolDir": r / "spool" / "%n",
            "SlurmdPidFile": r / "slurmd-%n.pid",
            "SlurmdLogFile": r / "log" / "slurmd-%n.log",
        }
        lines = []
        for line in super().config_lines():
            key = line.split("=", 1)[0]
            if key in ("NodeName", "PartitionName"):
                hardware = line.split(" ", 2)[2].rsplit(" State=", 1)[0] if key == "NodeName" else None
                if hardware is not None:
                    lines += [f"NodeName={node} NodeAddr={net.address(k)} {hardware} State=UNKNOWN"
                              for k, node in enumerate(self.nodes, 1)]
                else:
                    lines.append(f"PartitionName=debug Nodes={','.join(self.nodes)} Default=YES "
                                 "MaxTime=INFINITE State=UP OverSubscribe=NO")
            else:
                lines.append(f"{key}={replace[key]}" if key in replace else line)
        return lines

    def write_config(self):
        for node in self.nodes:
            (self.root / "spool" / node).mkdir(parents=True, exist_ok=True)
        (self.root / "network.json").write_text(json.dumps(self.network.describe()) + "\n")
        return super().write_config()

    def _spawn_slurmds(self):
        for k, node in enumerate(self.nodes, 1):
            self._spawn(f"slurmd-{node}", self.network.node_argv(k, ["slurmd", "-D", "-N", node, "-f", str(self.conf)]))

    def node_state(self):
        """``IDLE`` when every node is idle, else ``node1=STATE node2=STATE``."""
        proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True,
                              env=self.env(), timeout=30)
        if proc.returncode != 0:
            return "no answer"
        states = dict(line.split() for line in proc.stdout.strip().splitlines() if len(line.split()) == 2)
        if sorted(states) == sorted(self.nodes) and all(s.upper() == "IDLE" for s in states.values()):
            return "IDLE"
        return " ".join(f"{n}={s.upper()}" for n, s in sorted(states.items())) or "no nodes"

    def log_tail(self, name, lines=5):
        if name == "slurmd":
            return " || ".join(f"{n}: {super(SlurmNodes, self).log_tail(f'slurmd-{n}', lines)}" for n in self.nodes)
        return super().log_tail(name, lines)

    def start(self, timeout=60):
        """Make the namespaces, then start the daemons and wait until every node is idle."""
        check_possible()
        self.network.create()
        try:
            return super().start(timeout)
        except BaseException:
            # A failed start has stopped the daemons already (SlurmCluster.start).
            self.stop() if self._daemons else self.network.remove()
            raise

    def stop(self, timeout=30):
        """Stop the daemons, then remove the namespaces and links."""
        state = self.root / "network.json"
        if self.network.subnet is None and state.exists():
            self.network = NodeNetwork(state=json.loads(state.read_text()))
        try:
            super().stop(timeout)
        finally:
            self.network.remove()


def main(argv=None):
    """``install``, ``up DIR`` or ``down DIR``; exit status 0 on success."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("install", "up", "down") or (argv[0] != "install" and len(argv) != 2):
        print("usage: slurm_nodes.py install | up DIR | down DIR", file=sys.stderr)
        return 2
    try:
        if argv[0] == "install":
            ensure_installed()
        elif argv[0] == "up":
            ensure_installed()
            cluster = SlurmNodes(argv[1])
            # A network made for a process that exits at once: owned by
            # nobody, so only `down` (not another run's sweep) removes it.
            cluster.network.owner = 0
            cluster.start()
            cluster._daemons.clear()
            print(f"SLURM_CONF={cluster.conf}")
            print(" ".join(f"{k}={v}" for k, v in MPI_ENV.items()) + "  # for MPI jobs across the nodes")
        else:
            SlurmNodes(argv[1]).stop()
    except SlurmUnavailable as exc:
        print(f"slurm_nodes: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
