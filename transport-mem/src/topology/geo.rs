//! Places on the globe: a node's position, great-circle distances, and the rules that
//! turn a distance into a link cost and a one-way latency.

use std::time::Duration;

/// Mean Earth radius, km.
const EARTH_RADIUS_KM: f64 = 6371.0;
/// Light in fibre covers about 200 km per millisecond (two thirds of c).
pub(crate) const FIBRE_KM_PER_MS: f64 = 200.0;
/// A link's cost is its length in units of this many km, rounded up (at least 1).
pub(crate) const KM_PER_COST_UNIT: f64 = 250.0;

/// A point on the globe, in degrees.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Position {
    /// Latitude, −90 to 90 (north positive).
    pub lat: f64,
    /// Longitude, −180 to 180 (east positive).
    pub lon: f64,
}

impl Position {
    /// A position, or `None` when a coordinate is out of range or not a number.
    pub fn new(lat: f64, lon: f64) -> Option<Position> {
        ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon))
            .then_some(Position { lat, lon })
    }

    /// Great-circle distance to `other`, km (haversine on a sphere).
    pub fn km_to(&self, other: &Position) -> f64 {
        let (p1, p2) = (self.lat.to_radians(), other.lat.to_radians());
        let dp = p2 - p1;
        let dl = (other.lon - self.lon).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
    }
}

/// The cost of a link `km` long: `ceil(km / 250)`, at least 1.
pub(crate) fn cost_of_km(km: f64) -> u64 {
    let units = (km.max(0.0) / KM_PER_COST_UNIT).ceil();
    if units >= u64::MAX as f64 {
        u64::MAX
    } else {
        (units as u64).max(1)
    }
}

/// One-way latency over `km` of fibre plus `floor` (switching, last mile), rounded up to
/// a whole millisecond.
pub(crate) fn latency_of_km(km: f64, floor: Duration) -> Duration {
    let ms = (km.max(0.0) / FIBRE_KM_PER_MS).ceil();
    floor + Duration::from_millis(ms.min(1e9) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_match_known_city_pairs() {
        let amsterdam = Position::new(52.37, 4.89).unwrap();
        let rome = Position::new(41.90, 12.50).unwrap();
        let km = amsterdam.km_to(&rome);
        assert!((1290.0..1310.0).contains(&km), "Amsterdam–Rome {km} km");
        assert_eq!(amsterdam.km_to(&amsterdam), 0.0);
        let sydney = Position::new(-33.87, 151.21).unwrap();
        let sydney_km = amsterdam.km_to(&sydney);
        assert!((16_600.0..16_700.0).contains(&sydney_km), "{sydney_km} km");
        assert!(Position::new(91.0, 0.0).is_none() && Position::new(0.0, f64::NAN).is_none());
    }

    #[test]
    fn cost_and_latency_rules() {
        assert_eq!(cost_of_km(0.0), 1);
        assert_eq!(cost_of_km(250.0), 1);
        assert_eq!(cost_of_km(250.1), 2);
        assert_eq!(cost_of_km(1300.0), 6);
        let floor = Duration::from_millis(2);
        assert_eq!(latency_of_km(0.0, floor), floor);
        assert_eq!(latency_of_km(1300.0, floor), Duration::from_millis(9));
    }
}
