//! Device and precision choice: CUDA when present (bf16, or f16 where bf16 is not supported),
//! else CPU in f32; and the CPU thread count.

use tch::{Device, Kind};

/// Which device the caller wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DevicePref {
    /// CUDA device 0 when LibTorch sees one, else CPU.
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for DevicePref {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DevicePref::Auto),
            "cpu" => Ok(DevicePref::Cpu),
            "cuda" => Ok(DevicePref::Cuda(0)),
            s => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DevicePref::Cuda)
                .ok_or_else(|| format!("unknown device {s:?} (auto, cpu, cuda, cuda:N)")),
        }
    }
}

/// Resolves a preference to a tch device.
pub fn select_device(pref: DevicePref) -> Device {
    match pref {
        DevicePref::Cpu => Device::Cpu,
        DevicePref::Cuda(i) => Device::Cuda(i),
        DevicePref::Auto => Device::cuda_if_available(),
    }
}

/// The compute precision for a device: f32 on CPU; on CUDA bf16 when the GPU supports it
/// (compute capability ≥ 8), else f16.
pub fn default_kind(device: Device) -> Kind {
    match device {
        Device::Cuda(_) => {
            if tch::utils::has_cuda() && cuda_supports_bf16() {
                Kind::BFloat16
            } else {
                Kind::Half
            }
        }
        _ => Kind::Float,
    }
}

fn cuda_supports_bf16() -> bool {
    // A tiny bf16 matmul on the GPU: works on Ampere and newer, errors or is emulated before.
    let t = tch::Tensor::f_ones([2, 2], (Kind::BFloat16, Device::Cuda(0)));
    t.and_then(|t| t.f_matmul(&t)).is_ok()
}

/// Sets LibTorch's intra-op thread count (None: leave LibTorch's default, one per core).
pub fn set_threads(threads: Option<usize>) {
    if let Some(n) = threads.filter(|&n| n > 0) {
        tch::set_num_threads(n as i32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse() {
        assert_eq!("cpu".parse::<DevicePref>(), Ok(DevicePref::Cpu));
        assert_eq!("cuda:1".parse::<DevicePref>(), Ok(DevicePref::Cuda(1)));
        assert!("tpu".parse::<DevicePref>().is_err());
    }

    #[test]
    fn cpu_computes_in_f32() {
        assert_eq!(default_kind(Device::Cpu), Kind::Float);
    }
}
