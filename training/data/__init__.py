"""Exchange and CoinGecko clients, candle storage and gap reports."""
