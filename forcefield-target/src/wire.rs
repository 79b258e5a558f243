/*!
Floats on the wire. JSON has no NaN or infinity, and a hunt must see them, so a non-finite value is
written as the string `"NaN"`, `"Infinity"` or `"-Infinity"`; finite values are JSON numbers, written
in the shortest form that reads back to the same `f32` (so positions cross the protocol bit for bit).
*/

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One `f32` as the protocol writes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WireF32(pub f32);

impl Serialize for WireF32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let x = self.0;
        if x.is_nan() {
            s.serialize_str("NaN")
        } else if x == f32::INFINITY {
            s.serialize_str("Infinity")
        } else if x == f32::NEG_INFINITY {
            s.serialize_str("-Infinity")
        } else {
            s.serialize_f32(x)
        }
    }
}

impl<'de> Deserialize<'de> for WireF32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            // A 64-bit writer (Python) prints the f32's exact value as a double: this rounds back.
            Raw::Number(x) => Ok(WireF32(x as f32)),
            Raw::Text(t) => match t.as_str() {
                "NaN" => Ok(WireF32(f32::NAN)),
                "Infinity" => Ok(WireF32(f32::INFINITY)),
                "-Infinity" => Ok(WireF32(f32::NEG_INFINITY)),
                _ => Err(D::Error::custom(format!(
                    "`{t}` is not a number (non-finite values are \"NaN\", \"Infinity\", \"-Infinity\")"
                ))),
            },
        }
    }
}

fn to_wire(points: &[[f32; 3]]) -> Vec<[WireF32; 3]> {
    points
        .iter()
        .map(|p| [WireF32(p[0]), WireF32(p[1]), WireF32(p[2])])
        .collect()
}

fn from_wire(points: Vec<[WireF32; 3]>) -> Vec<[f32; 3]> {
    points
        .into_iter()
        .map(|p| [p[0].0, p[1].0, p[2].0])
        .collect()
}

/// `Vec<[f32; 3]>` with non-finite coordinates as strings.
pub mod points {
    use super::*;

    /// Serializes points.
    pub fn serialize<S: Serializer>(v: &[[f32; 3]], s: S) -> Result<S::Ok, S::Error> {
        to_wire(v).serialize(s)
    }

    /// Deserializes points.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[f32; 3]>, D::Error> {
        Ok(from_wire(Vec::deserialize(d)?))
    }
}

/// `Option<Vec<[f32; 3]>>` with non-finite coordinates as strings.
pub mod optional_points {
    use super::*;

    /// Serializes optional points.
    pub fn serialize<S: Serializer>(v: &Option<Vec<[f32; 3]>>, s: S) -> Result<S::Ok, S::Error> {
        v.as_deref().map(to_wire).serialize(s)
    }

    /// Deserializes optional points.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<[f32; 3]>>, D::Error> {
        Ok(Option::<Vec<[WireF32; 3]>>::deserialize(d)?.map(from_wire))
    }
}

/// `Vec<f32>` with non-finite values as strings.
pub mod floats {
    use super::*;

    /// Serializes floats.
    pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|&x| WireF32(x))
            .collect::<Vec<_>>()
            .serialize(s)
    }

    /// Deserializes floats.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        Ok(Vec::<WireF32>::deserialize(d)?
            .into_iter()
            .map(|x| x.0)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_cross_as_strings_and_finite_ones_bit_for_bit() {
        let xs = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.1,
            -3.5e-38,
            1e30,
        ];
        let text =
            serde_json::to_string(&xs.iter().map(|&x| WireF32(x)).collect::<Vec<_>>()).unwrap();
        assert!(
            text.starts_with(r#"["NaN","Infinity","-Infinity",0.1,"#),
            "{text}"
        );
        let back: Vec<WireF32> = serde_json::from_str(&text).unwrap();
        assert!(back[0].0.is_nan());
        for (a, b) in xs.iter().zip(&back).skip(1) {
            assert_eq!(a.to_bits(), b.0.to_bits());
        }
        // A double-precision writer's exact decimal of an f32 reads back to that f32.
        let back: WireF32 = serde_json::from_str("0.10000000149011612").unwrap();
        assert_eq!(back.0.to_bits(), 0.1f32.to_bits());
        assert!(serde_json::from_str::<WireF32>(r#""nan""#).is_err());
    }
}
