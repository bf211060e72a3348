-- Wrong passwords are counted by the user registry, which checks them
-- (its `password_failures` table), so every check spends one budget.
DROP TABLE login_failures;
