pub mod distance;
pub mod hnsw;
pub mod ivf;
pub mod kmeans;
pub mod pq;
mod rng;
pub mod spec;
pub mod topk;
