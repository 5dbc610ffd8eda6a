//! Economics (whitepaper §3, DESIGN.md §5): pure functions over fixed-point integers.
