//! Links libtorch (rpath set) for the serve binary and tests; see scripts/torch_link.rs.
include!("../../scripts/torch_link.rs");
fn main() {
    torch_link();
}
