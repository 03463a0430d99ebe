"""``hpcml scale``: a finished run's time per iteration predicted on N nodes (:mod:`hpcml.scale`)."""

import os

from hpcml import options
from hpcml.command import check_paths, command
from hpcml.errors import InputError


def register(subparsers, common):
    """Add ``hpcml scale``."""
    from hpcml.scale import NETWORKS, SHARED_MEMORY

    p = subparsers.add_parser(
        "scale", parents=[common], help="predict a finished run's time per iteration on N nodes",
        description="Reads RUN.h5's per-iteration compute seconds and collective payloads and "
                    "predicts time per iteration, compute against network wait, at each node count "
                    "with an alpha-beta model of the collectives' algorithms. Run it without mpiexec.")
    p.add_argument("run", metavar="RUN.h5", help="an output file of an hpcml job")
    p.add_argument("--nodes", default="1,2,4,...,1024",
                   help="node counts: 1,2,4,...,1024 ('...' continues the progression; default so)")
    p.add_argument("--ranks-per-node", type=options.count, default=None,
                   help="ranks per node (default: as in the run)")
    net = p.add_argument_group("network (a preset, or --alpha and --beta)")
    net.add_argument("--network", choices=sorted(NETWORKS),
                     help="; ".join(n.source for n in NETWORKS.values()))
    net.add_argument("--alpha", type=options.positive, help="latency, seconds per message")
    net.add_argument("--beta", type=options.positive, help="seconds per byte (1 / bandwidth)")
    net.add_argument("--shm-alpha", type=options.positive, default=SHARED_MEMORY.alpha,
                     help=f"inside a node: seconds per message (default {SHARED_MEMORY.alpha:g})")
    net.add_argument("--shm-beta", type=options.positive, default=SHARED_MEMORY.beta,
                     help=f"inside a node: seconds per byte (default {SHARED_MEMORY.beta:g})")
    p.add_argument("--weak", action="store_true",
                   help="weak scaling: every rank keeps its share of the data (default: strong)")
    p.add_argument("--allreduce-large", choices=["rabenseifner", "ring"], default="rabenseifner",
                   help="allreduce above 2048 bytes: MPICH's reduce-scatter+allgather (default) or a ring")
    p.add_argument("--chart", default=None,
                   help="chart file (PNG; default RUN-scale.png beside RUN.h5; '' for none)")
    p.set_defaults(handler=run_scale)


@command(inputs=("run",), outputs=("chart",))
def run_scale(args, comm):
    """Print the prediction table and write the chart."""
    from hpcml import scale

    if comm.size > 1:
        raise InputError("scale: run it without mpiexec", collective=True)
    if args.network and (args.alpha is not None or args.beta is not None):
        raise InputError("scale: give --network or --alpha and --beta, not both")
    if args.network:
        network = scale.network_of(args.network)
    elif args.alpha is not None and args.beta is not None:
        network = scale.Network("measured", args.alpha, args.beta, "given on the command line")
    else:
        raise InputError("scale: give --network (ib-hdr, ib-edr, 100gbe) or both --alpha and --beta")
    nodes = scale.parse_nodes(args.nodes)
    shm = scale.Network("shared memory", args.shm_alpha, args.shm_beta)
    profile = scale.read_profile(args.run)
    rows = scale.predict(profile, nodes, network, shm, args.ranks_per_node, args.weak,
                         args.allreduce_large)
    if args.chart is None:
        # The default chart path gets the checks every declared output gets.
        args.chart = os.path.splitext(args.run)[0] + "-scale.png"
        check_paths(args)
    chart = args.chart
    written = bool(chart) and scale.write_chart(profile, rows, network, chart)
    if not args.json:
        print(scale.format_table(profile, rows, network, args.weak), flush=True)
        if written:
            print(f"chart: {chart}", flush=True)
        elif chart:
            print("chart: not written (matplotlib is not installed; pip install matplotlib)", flush=True)
    return {"run": args.run, "network": network.describe(), "weak": args.weak, "rows": rows,
            "chart": chart if written else None}
