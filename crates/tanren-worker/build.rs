//! Links libtorch (CUDA kept, rpath set) for the worker binary and tests; see scripts/torch_link.rs.
include!("../../scripts/torch_link.rs");
fn main() {
    torch_link();
}
