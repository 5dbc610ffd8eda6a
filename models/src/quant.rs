//! The weight quantization of a squeezed model directory: what `brainmesh squeeze --quant`
//! writes ([`crate::squeeze::export`]) and the loader reads back from `brainmesh_quant` in
//! `config.json` ([`crate::model`]).

use serde::{Deserialize, Serialize};

use crate::ggml::GgmlType;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quant {
    None,
    Int8,
    Int4,
}

impl std::str::FromStr for Quant {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(Quant::None),
            "int8" => Ok(Quant::Int8),
            "int4" => Ok(Quant::Int4),
            _ => Err(format!("unknown quantization {s:?} (none, int8, int4)")),
        }
    }
}

impl Quant {
    pub fn ggml(self) -> Option<GgmlType> {
        match self {
            Quant::None => None,
            Quant::Int8 => Some(GgmlType::Q8_0),
            Quant::Int4 => Some(GgmlType::Q4_1),
        }
    }
}
