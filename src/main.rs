//! The `flux-sim` binary: a thin shell over the library's command line.

fn main() {
    std::process::exit(flux_sim::cli::main());
}
