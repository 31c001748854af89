/* How every page writes its figures: one unit system for energy (mWh below a watt-hour, then Wh, kWh), one for
 * mass, rates and durations with their unit, all with the reader's thousands separators. Loaded by base.html;
 * no build step. */
(function () {
  "use strict";

  const ENERGY_UNITS = [[1e6, "MWh"], [1e3, "kWh"], [1, "Wh"], [1e-3, "mWh"]];
  const MASS_UNITS = [[1e6, "t"], [1e3, "kg"], [1, "g"], [1e-3, "mg"]];

  function isNumber(value) {
    return typeof value === "number" && isFinite(value);
  }

  /** Three significant figures or so, grouped: 0.0123 → "0.012", 12.34 → "12.3", 12345 → "12,345". */
  function number(value) {
    if (value === 0) return "0";
    const abs = Math.abs(value);
    const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
    return value.toLocaleString(undefined, {minimumFractionDigits: 0, maximumFractionDigits: digits});
  }

  /** The unit of ``units`` ([[factor, suffix], …] from the largest down) that ``value`` reads best in. */
  function unitFor(value, units) {
    const abs = Math.abs(value);
    for (const unit of units) {
      if (abs >= unit[0]) return unit;
    }
    return units[units.length - 1];
  }

  function inUnit(value, unit) {
    return number(value / unit[0]) + " " + unit[1];
  }

  function withUnits(value, units) {
    return isNumber(value) ? inUnit(value, unitFor(value, units)) : "–";
  }

  /** A low–high range in the unit of its central value; ends that print the same print once. */
  function range(low, central, high, units) {
    const unit = unitFor(central || high || 0, units);
    const lowText = number(low / unit[0]);
    const highText = number(high / unit[0]);
    return {
      central: inUnit(central, unit),
      range: lowText === highText ? lowText + " " + unit[1] : lowText + "–" + highText + " " + unit[1],
    };
  }

  /** A time span in milliseconds: 120 → "120 ms", 1534 → "1.53 s", 65000 → "65.0 s". */
  function duration(ms) {
    if (!isNumber(ms)) return "–";
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 10000) return (ms / 1000).toFixed(2) + " s";
    return (ms / 1000).toFixed(1) + " s";
  }

  /** Tokens per second: "1,234 tok/s", "45.6 tok/s". */
  function rate(tps) {
    if (!isNumber(tps)) return "–";
    const digits = Math.abs(tps) >= 100 ? 0 : 1;
    return tps.toLocaleString(undefined, {minimumFractionDigits: digits, maximumFractionDigits: digits}) + " tok/s";
  }

  window.Format = {
    ENERGY_UNITS: ENERGY_UNITS,
    MASS_UNITS: MASS_UNITS,
    isNumber: isNumber,
    number: number,
    unitFor: unitFor,
    energy: function (wh) { return withUnits(wh, ENERGY_UNITS); },
    mass: function (g) { return withUnits(g, MASS_UNITS); },
    energyRange: function (low, central, high) { return range(low, central, high, ENERGY_UNITS); },
    massRange: function (low, central, high) { return range(low, central, high, MASS_UNITS); },
    rate: rate,
    duration: duration,
  };
})();
