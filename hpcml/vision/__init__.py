"""3-D object recognition: meshes to voxels and views, CNNs, the data-parallel trainer."""


def require_torch():
    """Raise InputError (on every rank) naming the extra to install when PyTorch is missing."""
    from hpcml.errors import InputError

    try:
        import torch  # noqa: F401
    except ImportError:
        raise InputError("cnn: PyTorch is not installed (pip install 'hpcml[cnn]')",
                         collective=True) from None
