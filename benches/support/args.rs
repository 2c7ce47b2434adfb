//! Flags of the one-shot benches (`harness = false`): `--name value`, read from the command line
//! after cargo's own `--`.

/// The value after `name`, if given.
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

/// A number flag, or `default`.
pub fn number(name: &str, default: usize) -> usize {
    arg(name).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number")))
}

/// A comma-separated list of numbers, or `default` (written the same way).
pub fn numbers(name: &str, default: &str) -> Vec<usize> {
    arg(name)
        .unwrap_or_else(|| default.into())
        .split(',')
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} takes comma-separated numbers")))
        .collect()
}
