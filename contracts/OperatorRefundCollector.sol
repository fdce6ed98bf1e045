// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {AuthCaptureEscrow} from "./AuthCaptureEscrow.sol";

/// @notice The ERC-20 pull this collector makes.
interface ITransferFrom {
    function transferFrom(address from, address to, uint256 value) external returns (bool);
}

/// @title OperatorRefundCollector
/// @notice Supplies refund liquidity for the AuthCaptureEscrow by pulling it from
/// `paymentInfo.operator` with a plain ERC-20 allowance the operator gave this
/// contract.
/// @dev Written for Farthing against the public ABI of the commerce-payments
/// collector of the same name. Only the escrow may call `collectTokens`, and
/// the escrow only runs a refund sent by the operator itself, so nobody can
/// spend an operator's allowance but that operator. The escrow's address is an
/// immutable: a dev chain places this contract as it places the payment collector.
contract OperatorRefundCollector {
    /// @dev 1 = Refund, as the escrow's collector kinds number them.
    uint8 public constant collectorType = 1;

    AuthCaptureEscrow public immutable authCaptureEscrow;

    error OnlyAuthCaptureEscrow();
    error SafeERC20FailedOperation(address token);

    constructor(address authCaptureEscrow_) {
        authCaptureEscrow = AuthCaptureEscrow(authCaptureEscrow_);
    }

    function collectTokens(
        AuthCaptureEscrow.PaymentInfo calldata paymentInfo,
        address tokenStore,
        uint256 amount,
        bytes calldata
    ) external {
        if (msg.sender != address(authCaptureEscrow)) revert OnlyAuthCaptureEscrow();
        address token = paymentInfo.token;
        (bool ok, bytes memory data) =
            token.call(abi.encodeCall(ITransferFrom.transferFrom, (paymentInfo.operator, tokenStore, amount)));
        // A token's own refusal ("transfer amount exceeds ...") is the clearest reason: pass it on.
        if (!ok && data.length > 0) {
            assembly ("memory-safe") {
                revert(add(data, 32), mload(data))
            }
        }
        if (!ok || (data.length != 0 && !abi.decode(data, (bool))) || (data.length == 0 && token.code.length == 0)) {
            revert SafeERC20FailedOperation(token);
        }
    }
}
