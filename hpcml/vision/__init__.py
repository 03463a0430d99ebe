"""3-D object recognition: meshes to voxels and views, CNNs, the data-parallel trainer."""
