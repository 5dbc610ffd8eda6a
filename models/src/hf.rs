//! Hugging Face model directories: `config.json`, memory-mapped `*.safetensors` (one file or
//! an index of shards) and `tokenizer.json`.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use tch::{Device, Kind, Tensor};

use crate::error::{ModelError, Result};

/// Memory-mapped safetensors files of one model.
pub struct SafeTensorFiles {
    maps: Vec<(PathBuf, Mmap)>,
    /// tensor name → index into `maps`
    index: HashMap<String, usize>,
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::corrupt(path, format!("invalid JSON: {e}")))
}

impl SafeTensorFiles {
    /// Opens `model.safetensors`, or the shards listed in `model.safetensors.index.json`.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let files: Vec<PathBuf> = if single.exists() {
            vec![single]
        } else {
            let idx_path = dir.join("model.safetensors.index.json");
            let idx = read_json(&idx_path)?;
            let map = idx
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| ModelError::corrupt(&idx_path, "no weight_map"))?;
            let mut names: Vec<String> = map.values().filter_map(|v| v.as_str().map(String::from)).collect();
            names.sort();
            names.dedup();
            names.into_iter().map(|n| dir.join(n)).collect()
        };
        Self::open(&files)
    }

    pub fn open(files: &[PathBuf]) -> Result<Self> {
        let mut maps = Vec::new();
        let mut index = HashMap::new();
        for (i, path) in files.iter().enumerate() {
            let f = File::open(path).map_err(|e| ModelError::io(path, e))?;
            // SAFETY: read-only map; the safetensors parser bounds-checks every tensor.
            let mmap = unsafe { Mmap::map(&f) }.map_err(|e| ModelError::io(path, e))?;
            let st = SafeTensors::deserialize(&mmap)
                .map_err(|e| ModelError::corrupt(path, format!("invalid safetensors: {e:?}")))?;
            for name in st.names() {
                index.insert(name.clone(), i);
            }
            maps.push((path.clone(), mmap));
        }
        Ok(SafeTensorFiles { maps, index })
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.index.keys()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// A tensor converted to `kind` on `device`.
    pub fn tensor(&self, name: &str, device: Device, kind: Kind) -> Result<Tensor> {
        let &i = self.index.get(name).ok_or_else(|| ModelError::MissingTensor(name.into()))?;
        let (path, mmap) = &self.maps[i];
        let st = SafeTensors::deserialize(mmap)
            .map_err(|e| ModelError::corrupt(path, format!("invalid safetensors: {e:?}")))?;
        let view = st.tensor(name).map_err(|e| ModelError::corrupt(path, format!("{name}: {e:?}")))?;
        let src_kind = match view.dtype() {
            Dtype::F32 => Kind::Float,
            Dtype::F16 => Kind::Half,
            Dtype::BF16 => Kind::BFloat16,
            Dtype::F64 => Kind::Double,
            Dtype::I64 => Kind::Int64,
            Dtype::I32 => Kind::Int,
            Dtype::U8 => Kind::Uint8,
            other => return Err(ModelError::UnsupportedTensorType { name: name.into(), kind: format!("{other:?}") }),
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, src_kind)?;
        Ok(t.f_to_device(device)?.f_to_kind(kind)?)
    }
}

/// What `config.json` says about a model directory.
pub struct HfDir {
    pub dir: PathBuf,
    pub config: serde_json::Value,
    pub model_type: String,
}

impl HfDir {
    pub fn open(dir: &Path) -> Result<Self> {
        let config = read_json(&dir.join("config.json"))?;
        let model_type = config
            .get("model_type")
            .and_then(|v| v.as_str())
            .map(String::from)
            .or_else(|| config.get("architectures").and_then(|a| a.get(0)).and_then(|a| a.as_str()).map(String::from))
            .ok_or_else(|| ModelError::Metadata(format!("{}: model_type", dir.join("config.json").display())))?;
        Ok(HfDir { dir: dir.to_path_buf(), config, model_type })
    }

    pub fn parse_config<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.config.clone())
            .map_err(|e| ModelError::Metadata(format!("{}: {e}", self.dir.join("config.json").display())))
    }

    /// The chat template from `tokenizer_config.json` or `chat_template.jinja`, if any.
    pub fn chat_template(&self) -> Option<String> {
        read_json(&self.dir.join("tokenizer_config.json"))
            .ok()
            .and_then(|v| v.get("chat_template").and_then(|t| t.as_str()).map(String::from))
            .or_else(|| std::fs::read_to_string(self.dir.join("chat_template.jinja")).ok())
    }
}
