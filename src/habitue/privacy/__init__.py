"""The member's data: erasure (GDPR Art. 17), export (Art. 15/20) and consent history."""
