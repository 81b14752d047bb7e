"""Readers and writers: datasets, phonopy files, pymatgen and ASE conversions."""
