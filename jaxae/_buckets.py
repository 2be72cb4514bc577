"""Size buckets: few distinct shapes, so few compiled programs, for little padding."""


def bucket(n: int) -> int:
    """The padded size for n rows: the smallest m * 2**k >= n with 8 <= m < 16.

    At most 12.5% above n, and eight sizes per power of two: the encoder compiles
    once per bucket of rows, and the UMAP layout once per bucket of edges.
    """
    if n <= 8:
        return 8
    shift = max(0, (n - 1).bit_length() - 4)
    return -(-n >> shift) << shift
