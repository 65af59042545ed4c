"""The bottom layer: what every other package may use and which uses none of them — settings
and environments (`config`), the exception tree (`errors`), the exit-code contract
(`exit_codes`), strict JSON decoding (`strict_json`) and progress display (`progress`)."""
